"""quagga.evaluate"""
