"""Command-line flags shared by the `nbinfer` commands and the magics: argparse type checkers and the
LLM options as flags, generated from EngineConfig (so `nbinfer serve` and `%nbinfer load` take the
same flags with the same choices and help)."""
