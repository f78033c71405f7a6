"""Small sub-commands that have no module of their own."""
