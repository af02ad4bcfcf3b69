"""The demo project: a churn dataset with segments and a guided tour of the loop (``mlpilot demo``)."""
