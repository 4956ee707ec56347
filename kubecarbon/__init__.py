"""What the agent and the collector share: the wire contract, retry backoff, flag parsers.

Also home of the product-wide `kubecarbon` command (kubecarbon.cli). Apart from that
command, nothing here imports the agent or the collector, and nothing needs more than
the base install.
"""
