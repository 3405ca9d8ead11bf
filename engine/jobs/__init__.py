"""Detached `reuse-console` processes that outlive the console, their events and cancel."""
