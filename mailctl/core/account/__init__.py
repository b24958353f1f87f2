"""Account use cases: add, list, show, remove, set-password and test (no printing, no prompts).

This package face is the import path for the account API; the parts are `requests`
(command-line values -> AddAccountRequest), `blocks` (which server blocks a use case acts
on), `view` (get, list, show), `edit` (add, remove, set-password) and `check` (test:
logging in to each block).
"""

from __future__ import annotations

from mailctl.core.account.blocks import blocks_needing_secret
from mailctl.core.account.check import AccountTest, BlockCheck, Prompt, check_account
from mailctl.core.account.edit import (
    AccountAdded,
    AccountRemoved,
    PasswordStored,
    add_account,
    ensure_addable,
    removal_declined,
    remove_account,
    set_password,
)
from mailctl.core.account.requests import (
    AddAccountRequest,
    ServerInput,
    build_server,
    validate_account_name,
)
from mailctl.core.account.view import (
    AccountDetails,
    AccountList,
    AccountSummary,
    BlockDetails,
    get_account,
    list_accounts,
    show_account,
)

__all__ = [
    "AccountAdded",
    "AccountDetails",
    "AccountList",
    "AccountRemoved",
    "AccountSummary",
    "AccountTest",
    "AddAccountRequest",
    "BlockCheck",
    "BlockDetails",
    "PasswordStored",
    "Prompt",
    "ServerInput",
    "add_account",
    "blocks_needing_secret",
    "build_server",
    "check_account",
    "ensure_addable",
    "get_account",
    "list_accounts",
    "removal_declined",
    "remove_account",
    "set_password",
    "show_account",
    "validate_account_name",
]
