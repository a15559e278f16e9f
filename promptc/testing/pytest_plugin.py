"""pytest plugin entry point (collection of .prompt test blocks lands with the test runner)."""
