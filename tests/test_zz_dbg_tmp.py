import sys
sys.path.insert(0, "/work/main/tests")
from test_account_cli import *  # noqa
from test_account_cli import smtp_server, memory_keyring, config_file  # noqa
from keyring_backend import InMemoryKeyring, use_keyring

def test_dbg(smtp_server, memory_keyring, config_file):
    port, ca_file, logins = smtp_server
    add_tested(port, ca_file)
    memory_keyring.set_password(SERVICE, "t:smtp", "wrong")
    r = runner.invoke(app, ["account", "test", "t", "--json"])
    print(r.stdout, r.stderr)
    assert 0
