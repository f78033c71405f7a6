"""The code behind the book's chapters: experiments that use the library layers below."""
