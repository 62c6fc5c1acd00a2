"""The package version, on its own so that every wing can read it without importing the
package's front door."""

__version__ = "0.1.0"
