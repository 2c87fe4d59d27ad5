"""Example app: onboarding a user with a durable workflow."""
