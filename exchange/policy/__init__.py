"""Policy: authentication and authorization decisions (and later TLP and sharing agreements), pure."""
