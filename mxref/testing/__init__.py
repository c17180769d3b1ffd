"""Tools for testing MX implementations against mxref: backends and strategies."""
