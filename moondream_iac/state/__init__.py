"""State kept between runs: the applied record and the deployment lock."""
