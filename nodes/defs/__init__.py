"""Node definitions: the classes a workflow names, one module per family of nodes."""
