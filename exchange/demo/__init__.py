"""`exchange demo`: a live cross-border federation on 127.0.0.1 (hub processes, a medallion peer, a member's
webhook receiver) replaying a worm campaign from end to end. Wiring over the whole hub, like cli.py."""
