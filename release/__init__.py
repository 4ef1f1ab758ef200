"""Release tooling (not part of the installed package): the version and where it is written."""
