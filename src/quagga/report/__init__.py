"""quagga.report"""
