"""The only modules that open sockets; library exceptions become mailctl.errors types here."""
