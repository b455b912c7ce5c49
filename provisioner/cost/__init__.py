"""Cost: the price catalog, estimates for plans and running stacks, the TTL/budget reaper."""
