"""Account use cases: add, set, list, show, remove, set-password and test (no printing, no prompts).

This package's public face; the parts live in `requests` (command-line values ->
AddAccountRequest), `blocks` (which server blocks a use case acts on), `view` (get, list,
show), `edit` (add, set, remove, set-password) and `check` (test: logging in to each block). Every
use case takes the Config the caller loaded (cli's context), never a path to load.
"""

from __future__ import annotations

from mailctl.core.account.blocks import blocks_needing_secret
from mailctl.core.account.check import AccountTest, BlockCheck, check_account
from mailctl.core.account.edit import (
    AccountAdded,
    AccountChanged,
    AccountRemoved,
    PasswordStored,
    add_account,
    ensure_addable,
    removal_declined,
    remove_account,
    set_account,
    set_password,
)
from mailctl.core.account.requests import (
    NO_LOGIN,
    AddAccountRequest,
    ServerInput,
    SetAccountRequest,
    build_server,
    check_ca_file,
    validate_account_name,
)
from mailctl.core.account.view import (
    AccountDetails,
    AccountList,
    AccountSummary,
    BlockDetails,
    config_file,
    get_account,
    list_accounts,
    show_account,
)

__all__ = [
    "NO_LOGIN",
    "AccountAdded",
    "AccountChanged",
    "AccountDetails",
    "AccountList",
    "AccountRemoved",
    "AccountSummary",
    "AccountTest",
    "AddAccountRequest",
    "BlockCheck",
    "BlockDetails",
    "PasswordStored",
    "ServerInput",
    "SetAccountRequest",
    "add_account",
    "blocks_needing_secret",
    "build_server",
    "check_account",
    "check_ca_file",
    "config_file",
    "ensure_addable",
    "get_account",
    "list_accounts",
    "removal_declined",
    "remove_account",
    "set_account",
    "set_password",
    "show_account",
    "validate_account_name",
]
