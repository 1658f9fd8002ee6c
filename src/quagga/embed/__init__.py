"""quagga.embed"""
