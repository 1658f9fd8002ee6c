"""quagga.tiles"""
