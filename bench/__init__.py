"""Performance benchmarks: ChittyAuth's hot paths measured side by side with the libraries they replace."""
