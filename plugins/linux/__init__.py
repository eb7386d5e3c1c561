"""Linux plumbing shared by the plugins: firewall batches, sysctls, names. No spec logic here."""
