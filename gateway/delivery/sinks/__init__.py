"""One sink per destination type (HTTP, SQS) behind one `push`."""
