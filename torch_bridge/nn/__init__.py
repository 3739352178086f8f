"""Drop-in layers built on the compiled ops."""
