raise RuntimeError("the analyzer must never import this module")
