"""What each viewer pays: price rules per reseller and customer, applied to the spend and the line items."""
