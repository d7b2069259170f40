"""SVD Studio: `python app.py` serves the page (the Hugging Face Spaces app file)."""

from svd.server import main

if __name__ == "__main__":
    main()
