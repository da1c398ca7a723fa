"""Lab mode: the sandbox's servers on fixed ports for real mail clients, watched live."""
