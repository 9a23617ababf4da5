"""Page views, split by page; each is thin: parse input, call one selector or service, render."""
