"""quagga.models"""
