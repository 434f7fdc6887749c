"""Outbound HTTP that is not a payment processor: webhook deliveries to merchants."""
