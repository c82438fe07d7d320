"""GS1 EPCIS 2.0: identifiers, the CBV 2.0 event hash, documents, capture and query."""
