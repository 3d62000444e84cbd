"""The web side, before the queue: the Flask app (`app.create_app`), `/hooks/<source>` ingress,
health and admin endpoints. Imports come from the modules themselves."""
