"""DNS records for lane hosts by RFC 2136 dynamic update with TSIG (bind9, PowerDNS, ...)."""
