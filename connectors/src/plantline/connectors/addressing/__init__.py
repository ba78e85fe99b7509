"""Protocol addressing, pure: endpoints and their default ports, tag addresses, MQTT port and namespace.

The configuration validates with these, the sources read with them, and the operator renders them.
"""
