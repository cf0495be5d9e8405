"""What apply leaves behind: the applied record and the deployment lock."""
