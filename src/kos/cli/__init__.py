"""The `kos` command line: one module per subcommand (parse → settings → run)."""
