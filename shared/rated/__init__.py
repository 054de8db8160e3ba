"""Azure plan rated usage: line items from the Graph billing export, stored as versioned snapshot slices."""
