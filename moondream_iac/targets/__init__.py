"""Deploy targets: Modal, and the local machine. Both follow targets.base.Target."""
