"""One router per resource; `reviewops.serving.app.create_app` includes them."""
