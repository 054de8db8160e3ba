"""The timer functions' work: one module per Partner Center endpoint, plus what they share."""
