"""The web app: a page to draw with the model, and the JSON API behind it (`aisketcher serve`)."""
