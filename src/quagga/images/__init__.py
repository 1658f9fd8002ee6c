"""quagga.images"""
