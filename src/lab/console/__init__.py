"""The operator's console: the lab in a browser, with accounts and roles (issue 34; docs/console.md)."""
