"""Reading and writing sketch files. No torch here."""
