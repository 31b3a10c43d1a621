"""Developer tools, beside the service: the embedded stack, demo and synthetic events,
load generation and schema export. Nothing in the service imports them."""
