"""Identity management: registering ChittyID principals, resolving them for new credentials, changing their
status, and showing them. It sits above `grants`, whose checks authorize it, and above `identities`, whose
records it keeps."""
