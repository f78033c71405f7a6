"""The ``kdlib`` sub-commands, one module each (:data:`kdlib.cli.COMMANDS`): each parses its arguments
(:mod:`kdlib.commands.args` holds the shared ones) and calls the library; none holds logic of its own."""
