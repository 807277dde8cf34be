"""condense notifier: signed webhooks (Standard Webhooks) and email, with a delivery log and retries."""
