"""Billed data: Partner Center invoices, the Graph billed and reconciliation exports, period close and tie-out."""
