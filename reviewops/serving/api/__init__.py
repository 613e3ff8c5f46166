"""The API's routes (one router per resource), their dependencies and their request/response models."""
