"""The inference engine: no Jupyter, no IPython in here."""
