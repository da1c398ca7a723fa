"""What the scripted mail programs (MUAs) do besides speaking protocols: compose a
message (headers, Bcc, attachments), sign and encrypt it (S/MIME), zip it (PPAP)."""
