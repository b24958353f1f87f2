"""Message building, header safety and parsing, with the standard email package as reference."""
