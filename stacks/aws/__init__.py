"""The AWS stack: one Pulumi ComponentResource per component, composed by :mod:`.program`."""
